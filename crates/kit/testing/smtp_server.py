"""A real SMTP server for Kart's notification tests, on aiosmtpd.

    python smtp_server.py FOLDER PORT

Every message it accepts is written to FOLDER as `<n>.eml` (the raw
message as received). While the file FOLDER/refuse exists, every message
is answered with the SMTP reply written in it (e.g. `451 4.3.0 Try again
later`) and not stored: a test creates and removes that file to make the
server refuse and recover. Prints `ready` once it accepts connections.
"""

import os
import sys
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, folder):
        self.folder = folder
        self.accepted = 0

    async def handle_DATA(self, server, session, envelope):
        refuse = os.path.join(self.folder, "refuse")
        if os.path.exists(refuse):
            with open(refuse) as f:
                return f.read().strip() or "451 4.3.0 Try again later"
        self.accepted += 1
        name = os.path.join(self.folder, f"{self.accepted:06d}.eml")
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        with open(name + ".part", "wb") as f:
            f.write(content)
        os.rename(name + ".part", name)
        return "250 2.0.0 Message accepted for delivery"


def main():
    folder, port = sys.argv[1], int(sys.argv[2])
    controller = Controller(Handler(folder), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
