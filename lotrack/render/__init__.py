"""Output: terminal tables and JSON, PDF documents, labels."""
