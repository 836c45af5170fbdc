#!/usr/bin/python3
"""Opens an HTML report in headless Chromium and checks what a reader would see.

usage: check_report.py REPORT.html SCREENSHOT.png [--timeout SECONDS] [--sections A,B,...]

Fails (exit 1, one line on stderr) when a section is missing from the rendered page, an
image does not decode, or the page reports a console error: console.error/assert, an
uncaught exception, or a browser log error (a blocked or failed load, a Content Security
Policy violation). Writes a full-page screenshot 1280 px wide either way, when it can.
Exit 77 when no Chromium is installed (CTest's SKIP_RETURN_CODE).

Chromium is driven over the DevTools protocol on --remote-debugging-pipe (JSON messages
separated by NUL on fds 3 and 4), which needs only the standard library and, unlike
--enable-logging, reports each console message with its level.
"""
import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SECTIONS = ["summary", "metrics", "operating-point", "plots", "errors"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe"]
WIDTH = 1280

# Evaluated in the page: which sections exist and show, and which images failed to decode.
# (The section ids are filled in by check(): report.html's by default, --sections for others.)
PROBE = """JSON.stringify({
  sections: %(sections)s.map(id => { const e = document.getElementById(id);
                           return [id, !!e && e.getBoundingClientRect().height > 0]; }),
  images: document.images.length,
  broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)
               .map(i => i.alt || i.src.slice(0, 40)),
  height: Math.ceil(document.documentElement.scrollHeight)
})"""


class Failure(Exception):
    pass


class Browser:
    """One Chromium process and the page session it is driven through."""

    def __init__(self, binary, deadline):
        self.deadline = deadline
        self.buffer = b""
        self.next_id = 0
        self.events = []
        to_child, self.write_fd = self._pipe()
        self.read_fd, from_child = self._pipe()
        self.profile = tempfile.mkdtemp(prefix="check_report-")

        def wire_fds():  # Chromium reads commands on fd 3 and answers on fd 4
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.proc = subprocess.Popen([binary] + FLAGS + ["--user-data-dir=" + self.profile, "about:blank"],
                                     preexec_fn=wire_fds, close_fds=False, start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self.session = None

    @staticmethod
    def _pipe():
        # Above fd 9 and close-on-exec, so dup2 onto 3 and 4 in the child can't clobber them.
        ends = []
        for fd in os.pipe():
            ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
            os.close(fd)
        return ends

    def _receive(self):
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise Failure("Chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise Failure("Chromium exited unexpectedly")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session=True):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise Failure("%s failed: %s" % (method, reply["error"].get("message")))
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method):
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(i)
            self.events.append(self._receive())

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def console_errors(events):
    """The page's error-level console output, one short line each."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            found.append("console.%s: %s" % (params["type"], args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            found.append(params["entry"].get("text", "log error"))
    return [" ".join(line.split())[:200] for line in found]


def check(browser, report, screenshot, sections):
    target = browser.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
    browser.session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                   session=False)["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        browser.call(domain + ".enable")
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    navigation = browser.call("Page.navigate", {"url": "file://" + os.path.abspath(report)})
    if navigation.get("errorText"):
        raise Failure("cannot open the page: " + navigation["errorText"])
    browser.wait_for("Page.loadEventFired")
    result = browser.call("Runtime.evaluate", {"expression": PROBE % {"sections": json.dumps(sections)}, "returnByValue": True})["result"]
    page = json.loads(result["value"])
    height = min(max(page["height"], 600), 16000)
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})
    shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    # Everything the page logged has arrived by now: replies come after earlier events.
    problems = ["section #%s is missing or empty" % name for name, shown in page["sections"] if not shown]
    problems += ["image '%s' does not decode" % name for name in page["broken"]]
    problems += ["console error: " + line for line in console_errors(browser.events)]
    if problems:
        raise Failure("; ".join(problems[:3]) + (" (and %d more)" % (len(problems) - 3) if len(problems) > 3 else ""))
    return page


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("screenshot")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before giving up (default 60)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="ids of the sections the page must show (default: report.html's)")
    args = parser.parse_args()
    if not os.path.isfile(args.report):
        print("check_report: %s does not exist" % args.report, file=sys.stderr)
        return 1
    binary = os.environ.get("CHROMIUM") or next(
        (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if not binary:
        print("check_report: no Chromium found (install Debian's chromium); skipping", file=sys.stderr)
        return 77
    browser = Browser(binary, time.monotonic() + args.timeout)
    try:
        sections = [s for s in args.sections.split(",") if s]
        page = check(browser, args.report, args.screenshot, sections)
    except Failure as e:
        print("check_report: %s: %s" % (args.report, e), file=sys.stderr)
        return 1
    finally:
        browser.close()
    print("check_report: %s: %d sections, %d images, no console errors; screenshot %s"
          % (args.report, len(sections), page["images"], args.screenshot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
