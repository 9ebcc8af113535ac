"""What a reader sees: French text and tables, charts, chapters, annexes, HTML/PDF/DOCX reports."""
