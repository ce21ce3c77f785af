"""certkit's embedded prompt set (package data: harmful.txt, benign.txt)."""

__all__: list[str] = []
