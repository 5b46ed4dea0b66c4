#!/bin/sh
# PID 1 of the ibgwd image (installed as /usr/local/sbin/init, a name podman recognises as a
# systemd container): keeps the engine's log stream for the journal, then becomes systemd.
#
# systemd points its own stdout/stderr at /dev/null and logs to /dev/console, which engines
# create only with a terminal (-t). So `docker logs` / `podman logs` / `kubectl logs` would show
# nothing. Before systemd starts, a FIFO is made on the /run tmpfs with a reader that copies it
# to this process's stdout (the engine's log); ibgwd-container-log.service writes the journal
# into it. The reader also holds the FIFO open for writing, so it never sees end-of-file when
# a writer closes it. systemd moves it into init.scope at boot and ends it at shutdown.
console=/run/ibgwd-console
if rm -f "$console" && mkfifo -m 0600 "$console"; then
    # env -i: the container's environment may hold secrets (TWS_PASSWORD=...); only PID 1
    # keeps it, for ibgwd-container-env.service to read.
    env -i /bin/cat 0<>"$console" &
else
    echo "ibgwd: cannot create $console: no journal lines in the container's log" >&2
fi
exec /lib/systemd/systemd "$@"
