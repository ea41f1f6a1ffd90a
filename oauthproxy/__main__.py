from oauthproxy.main import main

main()
