"""What an operator does to the fleet, one function per action, called alike by the CLI and the
console: ``halt`` (the kill switch: stop entries, cancel them, optionally flatten) and ``resume``.
"""
