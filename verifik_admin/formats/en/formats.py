"""English date formats with the time zone shown (Django's own leave it out): "Nov. 29, 2026, 9:31 a.m. UTC"."""

DATETIME_FORMAT = "N j, Y, P T"
SHORT_DATETIME_FORMAT = "m/d/Y P T"
