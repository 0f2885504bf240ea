"""The commands as plain Python functions: the API that the CLI renders."""
