"""A tiny runner for the scenario steps: each step is a function; a failure is printed with its
cause and counted, the scenario goes on, and the process exits non-zero if any step failed."""

import os
import sys
import traceback

BASE = os.environ["SEKTORBRO_FHIR_BASE"]  # e.g. http://127.0.0.1:PORT/fhir (set by run.sh)
TOKEN = os.environ["SEKTORBRO_DEV_TOKEN"]

RESULTS = {"passed": 0, "failed": 0, "skipped": 0}


class Skip(Exception):
    pass


def step(client_name):
    def wrap(fn):
        def run(*args, **kwargs):
            name = f"{client_name}: {fn.__name__.replace('_', ' ')}"
            try:
                out = fn(*args, **kwargs)
            except Skip as e:
                RESULTS["skipped"] += 1
                print(f"skip {name}: {e}", flush=True)
                return None
            except Exception:
                RESULTS["failed"] += 1
                print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
                return None
            RESULTS["passed"] += 1
            print(f"ok   {name}", flush=True)
            return out

        return run

    return wrap


def finish(client_name, checked):
    r = RESULTS
    if checked == 0:
        r["failed"] += 1
        print(f"FAIL {client_name}: no response went through the strict-model check")
    print(f"{client_name}: {checked} responses parsed with fhirclient's strict R4 models")
    print(f"{client_name}: {r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped")
    sys.exit(1 if r["failed"] else 0)
