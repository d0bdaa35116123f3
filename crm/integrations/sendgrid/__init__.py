"""The email platform's event webhook in the SendGrid Event Webhook format: signature, parsing, endpoint."""
