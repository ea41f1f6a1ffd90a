"""The instance supervisor: reconciles running instances with the proxies Redis holds."""
