"""The tick path: instrument streams, the ready set, and draining ready sessions."""
