"""Produces crontab_reference.json: five-field cron expressions and their next ticks, computed
by croniter (https://pypi.org/project/croniter/), the reference the crontab tests compare with.

Run from this folder:
    python3 -m venv /tmp/cron-ref && /tmp/cron-ref/bin/pip install croniter==7.0.0
    /tmp/cron-ref/bin/python crontab_reference.py > crontab_reference.json

Each expression is followed from three starts in each zone (2026-01-01 00:00, and a day
before each of New York's 2026 daylight-saving changes, March 8 and November 1) for up to 40
ticks or until 2029 (so February 29 appears), as UTC instants. Where croniter departs from Vixie
cron, the test names the case and says which rule it follows instead.
"""

import json
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import croniter

EXPRESSIONS = [
    "* * * * *",
    "*/15 * * * *",
    "0 9 * * 1-5",
    "0 12 * * 1",
    "0 9 * * 0",
    "0 9 * * 7",
    "0 9 * * MON-FRI",
    "30 8 * * mon,wed,fri",
    "0 0 * * 6,0",
    "0 0 * * 5-7",
    "5 4 * * sun",
    "0 22 * * 1-5",
    "0 0 1 JAN *",
    "0 0 1 jan-mar *",
    "0 6 * feb,aug *",
    "0 0 13 * 5",
    "0 0 1,15 * 1",
    "0 0 1-7 * 1",
    "0 0 */10 * *",
    "15 14 1 * *",
    "23 0-20/2 * * *",
    "1-5/2 * * * *",
    "0 0-23/6 * * *",
    "0 0,12 1 */2 *",
    "0 4 8-14 * *",
    "0 0 29 2 *",
    "0 0 31 * *",
    "59 23 31 12 *",
    "30 2 * * *",
    "30 1 * * *",
    "0 2 * * *",
    "*/30 * * * *",
    "0 */2 * * *",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
]
ZONES = ["UTC", "America/New_York"]
TICKS = 40
END = datetime(2029, 1, 1, tzinfo=timezone.utc)
STARTS = [(2026, 1, 1, 0, 0), (2026, 3, 7, 12, 0), (2026, 10, 31, 12, 0)]


def main():
    cases = []
    for zone in ZONES:
        tz = ZoneInfo(zone)
        for expression in EXPRESSIONS:
          for start in [datetime(*s, tzinfo=tz) for s in STARTS]:
            it = croniter.croniter(expression, start)
            ticks = []
            while len(ticks) < TICKS:
                tick = it.get_next(datetime).astimezone(timezone.utc)
                if tick >= END:
                    break
                ticks.append(tick.strftime("%Y-%m-%dT%H:%M:%SZ"))
            cases.append(
                {
                    "expression": expression,
                    "timezone": zone,
                    "after": start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "ticks": ticks,
                }
            )
    # One case per line, so a change reads as a diff of cases.
    lines = ",\n".join(json.dumps(case, separators=(",", ":")) for case in cases)
    sys.stdout.write('{"generator":"croniter 7.0.0","cases":[\n' + lines + "\n]}\n")


if __name__ == "__main__":
    main()
