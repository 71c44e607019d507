/* client/transport - the client side of one connection for the command-line mail client:
 * a blocking TCP socket with timeouts, optional TLS (implicit or upgraded after STARTTLS /
 * STLS) with certificate verification against the system's default CA paths and the server's
 * host name, and a bounded line reader. Every failure returns a sysexits.h code with
 * *error_r (caller frees) saying what went wrong:
 *   EX_NOHOST     the host name does not resolve
 *   EX_UNAVAILABLE the connection was refused or timed out
 *   EX_PROTOCOL   TLS handshake or certificate verification failed, a line was too long,
 *                 the server closed the connection
 *   EX_IOERR      a read or write failed
 * Callers ignore SIGPIPE: a server that hangs up makes a write fail, not the process die. */
#ifndef TERN_CLIENT_TRANSPORT_H
#define TERN_CLIENT_TRANSPORT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include "lib/buf.h"

#define TRANSPORT_MAX_LINE (1024 * 1024)

enum transport_tls { TRANSPORT_TLS_STARTTLS, TRANSPORT_TLS_IMPLICIT, TRANSPORT_TLS_NONE };

struct transport {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char *host;		/* as given by the user: the name the certificate must carry */
	bool insecure;		/* skip certificate verification */
	bool loopback;		/* the peer is 127.0.0.0/8 or ::1 */
	bool failed;		/* a read, write or handshake failed: say nothing more */
	int timeout_ms;
	char rbuf[16384];
	size_t rpos, rlen;
};

/* transport_connect - resolve host, connect (each address in turn) within timeout_s seconds,
 * and start TLS at once when tls is TRANSPORT_TLS_IMPLICIT. 0 or an EX_ code. */
int transport_connect(struct transport *t, const char *host, uint16_t port,
		      enum transport_tls tls, bool insecure, int timeout_s, char **error_r);
/* transport_start_tls - TLS handshake on the open connection (after STARTTLS / STLS was
 * accepted); nothing may be buffered from before. 0 or an EX_ code. */
int transport_start_tls(struct transport *t, char **error_r);
bool transport_is_tls(const struct transport *t);
/* transport_write - send all of p[0..n). 0 or an EX_ code. */
int transport_write(struct transport *t, const void *p, size_t n, char **error_r);
/* transport_read_line - the next line (without CRLF or LF) into line (reset first).
 * 0 or an EX_ code (EX_PROTOCOL for a line over TRANSPORT_MAX_LINE or end of connection). */
int transport_read_line(struct transport *t, buf *line, char **error_r);
/* transport_read_exact - append exactly n bytes to out. 0 or an EX_ code. */
int transport_read_exact(struct transport *t, size_t n, buf *out, char **error_r);
/* client_fail - set *error_r (freeing an earlier one) to the formatted message and return
 * code: the one way every client function reports a failure. */
int client_fail(char **error_r, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* client_sasl_plain - append the base64 SASL PLAIN response (RFC 4616) for user and
 * password to out, NUL-terminated; the caller wipes it (explicit_bzero) after use. */
void client_sasl_plain(const char *user, const char *password, buf *out);

/* transport_close - shut TLS down politely, close the socket, free everything. */
void transport_close(struct transport *t);

#endif
