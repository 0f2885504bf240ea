"""Microsoft Graph for what IMAP cannot carry (inbox rules, automatic replies)."""
