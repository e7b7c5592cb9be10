"""Operating the box's alerts: the end-to-end alert drill (`obsbox drill`).

>>> from obsbox.alerting.drill import SEVERITIES
>>> SEVERITIES
('warning', 'critical')
"""
