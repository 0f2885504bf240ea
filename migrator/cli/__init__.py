"""The click command line: parse options, call commands, render, map errors to exit codes."""
