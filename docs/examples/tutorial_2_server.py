"""Step 2: a small HTTP server, on ``trio.serve_tcp``.

Run it with ``python docs/examples/tutorial_2_server.py [PORT]`` (default 8000), try
``curl http://127.0.0.1:8000/``, and stop it with Ctrl-C.
"""

import sys

import trio

HOST = "127.0.0.1"
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"


async def handle(stream: trio.SocketStream) -> None:
    """Answer one HTTP request, whatever it asks for, with ``hello``."""
    request = b""
    while b"\r\n\r\n" not in request:  # read up to the end of the request's headers
        data = await stream.receive_some()
        if not data:
            return  # the client hung up
        request += data
    print("web: answering", request.split(b"\r\n")[0].decode("ascii", "replace"))
    await trio.sleep(0.5)  # stands in for the real work of a request
    await stream.send_all(RESPONSE)
    # trio.serve_tcp closes the connection when the handler returns.


async def web_server(
    port: int,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP on 127.0.0.1:*port* until cancelled; ready once it listens."""
    await trio.serve_tcp(handle, port, host=HOST, task_status=task_status)


async def main(port: int) -> None:
    """The whole program: one web server."""
    await web_server(port)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
