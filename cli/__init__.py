"""`proxy-client`: the command-line client of the gateway's admin API."""
