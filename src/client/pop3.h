/* client/pop3 - a small blocking POP3 client for `tern read` (RFC 1939, 2449, 2595, 5034):
 * STLS or implicit TLS, AUTH PLAIN when CAPA lists it (USER/PASS otherwise), STAT, LIST,
 * UIDL, RETR, TOP, DELE, QUIT. Multi-line answers are dot-unstuffed. Deletions take effect
 * only at QUIT (pop3c_quit). Functions return 0 or a sysexits.h code with *error_r (caller
 * frees): EX_NOPERM a refused login, EX_DATAERR no such message, EX_PROTOCOL an
 * unexpected answer, and the transport's codes. */
#ifndef TERN_CLIENT_POP3_H
#define TERN_CLIENT_POP3_H
#include <stdbool.h>
#include <stdint.h>
#include "client/transport.h"
#include "lib/buf.h"

struct pop3c {
	struct transport t;
	buf line;
	char *caps;		/* " CAP1 CAP2 " (CAPA lines, uppercase), NULL without CAPA */
	uint32_t count;		/* messages in the maildrop (STAT) */
	bool quit_sent;
};

/* pop3c_open - connect, read the greeting, STLS unless tls is NONE or IMPLICIT. */
int pop3c_open(struct pop3c *c, const char *host, uint16_t port, enum transport_tls tls,
	       bool insecure, int timeout_s, char **error_r);
/* pop3c_login - authenticate (never without TLS to a non-loopback server), then STAT. */
int pop3c_login(struct pop3c *c, const char *user, const char *password, char **error_r);
/* pop3c_sizes - LIST: sizes[i] for message i+1 (*sizes_r has c->count entries; caller
 * frees). */
int pop3c_sizes(struct pop3c *c, uint64_t **sizes_r, char **error_r);
/* pop3c_top - TOP n lines (0: the header only), appended to out with CRLF line ends. */
int pop3c_top(struct pop3c *c, uint32_t n, unsigned lines, buf *out, char **error_r);
/* pop3c_retr - RETR n appended to out. */
int pop3c_retr(struct pop3c *c, uint32_t n, buf *out, char **error_r);
/* pop3c_dele - DELE n (effective at pop3c_quit). */
int pop3c_dele(struct pop3c *c, uint32_t n, char **error_r);
/* pop3c_quit - QUIT; 0 when the server answered +OK (deletions done). */
int pop3c_quit(struct pop3c *c, char **error_r);
/* pop3c_close - close (without QUIT unless pop3c_quit ran: nothing is deleted) and free. */
void pop3c_close(struct pop3c *c);

#endif
