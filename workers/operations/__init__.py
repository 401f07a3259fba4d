"""What an operator does to the fleet, one function per action, called alike by the CLI and the
console, each leaving an ``operator`` event naming who acted (``audit``): ``halt`` (the kill
switch: stop entries, cancel them, optionally flatten), ``resume`` and ``wind_down``;
``flatten_session``; ``stop_session`` and ``start_session``.
"""
