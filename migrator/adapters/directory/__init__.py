"""The account directory: an LDAP server (ldap3) or an LDIF file read through ldap3's mock.

ldap3 is imported here and nowhere else in migrator.
"""

from .filters import escape_filter_value
from .reader import DirectoryReader, decode_value, open_directory

__all__ = ["DirectoryReader", "decode_value", "escape_filter_value", "open_directory"]
