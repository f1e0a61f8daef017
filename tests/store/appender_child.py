"""Child process for the SIGKILL test: appends events forever, acknowledging each.

It prints an event's seq only after `record_message` returned, which is the
moment the store promises the event survives a kill.
"""

import json
import sys
from pathlib import Path

from p3log.store.log import EventLog


def main() -> None:
    log = EventLog.open(Path(sys.argv[1]))
    n = 0
    while True:
        n += 1
        payload = {"type": "PING_REQUEST", "tag": f"t{n}", "pad": "x" * (n % 300)}
        event = log.record_message("kill-test", "client", json.dumps(payload).encode())
        print(event.seq, flush=True)
        if n % 37 == 0:
            log.flush()  # part of what survives is in the index, part only in the journal


if __name__ == "__main__":
    main()
