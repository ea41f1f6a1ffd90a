"""One module per command group; `cli.main` registers each on the root app."""
