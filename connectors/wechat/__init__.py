"""The WeChat Official Account channel: server-URL endpoint, AES safe mode, customer-service API pushes."""
