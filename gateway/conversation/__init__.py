"""Contacts, conversations and messages: every channel's traffic goes through here."""
