"""Plain dataclasses, enums and exception types. Imports nothing of ours."""
