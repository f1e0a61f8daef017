"""A rebuild's worker process (`parallel.py`): folds the events it is sent and sends
back the rows they changed. Run as `python -m p3log.projections.fold_worker`, by
`parallel.Workers` only; it speaks pickled Arrow tables over stdin and stdout."""

from __future__ import annotations

import multiprocessing.connection
import os
import sys

import pyarrow as pa

from p3log.projections.fold import Projector
from p3log.projections.parallel import changed_tables, observed_events


def main() -> None:
    receive = multiprocessing.connection.Connection(os.dup(0), writable=False)
    answer = multiprocessing.connection.Connection(os.dup(1), readable=False)
    sys.stdout = sys.stderr  # nothing but answers goes to the parent's pipe
    projector = Projector(receive.recv())
    while True:
        try:
            events: pa.Table = receive.recv()
        except EOFError:
            return  # the parent is done (or gone)
        try:
            for event in observed_events(events):
                projector.feed(event)
            answer.send(changed_tables(projector))
        except BrokenPipeError:
            return  # the parent is gone (killed, or stopped by another worker's end)
        except Exception as error:
            answer.send(error)
            raise


if __name__ == "__main__":
    main()
