/* sdnotify - tell the service manager (systemd, Type=notify) how the service is doing, by
 * hand: one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or '@' for the
 * abstract namespace), as sd_notify(3) does; no libsystemd. Without $NOTIFY_SOCKET nothing
 * is sent. */
#ifndef TERN_SDNOTIFY_H
#define TERN_SDNOTIFY_H

/* sdnotify - send state ("READY=1", "STOPPING=1", "STATUS=..." lines). 1 sent, 0 no
 * manager to tell, -1 it could not be sent (errno). */
int sdnotify(const char *state);

/* sdnotify_reloading - "RELOADING=1" with MONOTONIC_USEC (systemd wants both); READY=1
 * follows when the reload is over. */
int sdnotify_reloading(void);

#endif
