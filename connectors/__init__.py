"""Channel connectors (web chat, WeChat, outbound notices); they import only ``common``."""
