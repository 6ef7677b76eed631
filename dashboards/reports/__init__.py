"""Reports for supervisors: the shift handover and the daily and monthly operations
reports, as self-contained HTML (charts embedded) and optionally PDF.

`facility report shift|daily|monthly` (commands.py). Layers: periods (which instants a
report covers), data (InfluxDB and the alarm book, read only), figures and incidents
(the numbers), alarms (the alarm book's story), charts (matplotlib), html, pdf.
"""
