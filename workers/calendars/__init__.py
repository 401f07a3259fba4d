"""Exchange calendars from maintained libraries, behind ``trading.calendar``'s providers."""
