"""simpervisor is a library: this is the small asyncio program the peer benchmark runs it in.

    simpervisor_driver.py N always|never -- COMMAND...

starts N SupervisedProcess of COMMAND (`always`: always_restart), and on SIGTERM terminates
them all, killing what is still there after 2 s."""

import asyncio
import os
import signal
import sys

from simpervisor import SupervisedProcess


async def main(n, always, command):
    processes = [
        SupervisedProcess(f"s{i}", *command, always_restart=always) for i in range(n)
    ]
    await asyncio.gather(*(p.start() for p in processes))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()

    async def end(process):
        pid = process.pid
        try:
            await asyncio.wait_for(process.terminate(), 2)
        except asyncio.TimeoutError:
            # A cancelled terminate() marks the process killed, and kill() then refuses.
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    await asyncio.gather(*(end(p) for p in processes), return_exceptions=True)


if __name__ == "__main__":
    count, policy, separator, *argv = sys.argv[1:]
    assert separator == "--"
    asyncio.run(main(int(count), policy == "always", argv))
