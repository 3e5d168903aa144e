"""Teaching: the lessons' exercise checks and the student edition (lessons without solutions)."""
