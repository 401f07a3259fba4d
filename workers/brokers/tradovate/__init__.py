"""The Tradovate account manager (registered as ``tradovate``): REST through ``rest``, shared
access tokens through ``auth``, the documented messages in ``messages``, symbols in ``symbols``
and the ``AccountManager`` itself in ``broker``."""
