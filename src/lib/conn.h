/* conn - one client connection: socket or TLS (implicit or after STARTTLS), timeouts,
 * bounded input, an output buffer. Every protocol session sits on a conn.
 * The session is told about input, errors and the end of a close-after-flush through
 * conn_ops; a session frees its conn with conn_free (never from inside conn itself). */
#ifndef TERN_CONN_H
#define TERN_CONN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <openssl/ssl.h>

struct conn;

enum conn_event { CONN_EOF, CONN_ERROR, CONN_TIMEOUT };

struct conn_ops {
	void (*on_input)(void *ctx);	/* new bytes in conn_input(), or resumed (maybe none) */
	void (*on_event)(void *ctx, enum conn_event ev);	/* the session should end */
	void (*on_closed)(void *ctx);			/* close_after_flush finished */
};

/* conn_new - wrap an accepted non-blocking socket (owned from now on). tls_ctx: implicit
 * TLS when non-NULL. max_input: the input buffer's high watermark (reading pauses there).
 * max_per_ip: the connection is counted against its client address (lib/connlimit) and
 * uncounted by conn_free; conn_over_ip_limit tells when it was one too many. */
struct conn *conn_new(struct event_base *base, int fd, const struct sockaddr *peer,
		      socklen_t peerlen, SSL_CTX *tls_ctx, size_t max_input, unsigned max_per_ip,
		      const struct conn_ops *ops, void *ctx);
/* conn_over_ip_limit - true when the client already had max_per_ip connections: the
 * session should answer its protocol's refusal and close. */
bool conn_over_ip_limit(const struct conn *c);
void conn_free(struct conn **c);

struct evbuffer *conn_input(struct conn *c);
void conn_write(struct conn *c, const void *p, size_t n);
/* conn_write_reserve / conn_write_commit - write len bytes without a copy of ours: reserve
 * gives a contiguous place for them at the end of the output (NULL: none), commit makes the
 * first len of them output (0: nothing; the reservation is dropped). */
void *conn_write_reserve(struct conn *c, size_t len);
void conn_write_commit(struct conn *c, size_t len);
/* conn_send_file - queue len bytes of the file fd from offset, sent without a copy through
 * user space (sendfile); on success the connection owns fd (closed once sent). -1 (fd still
 * the caller's) over TLS or COMPRESS: write the bytes instead. */
int conn_send_file(struct conn *c, int fd, uint64_t offset, uint64_t len);
void conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* conn_set_timeout - idle read timeout in seconds (also used for writes). */
void conn_set_timeout(struct conn *c, unsigned seconds);
/* conn_starttls - switch to TLS as server: whatever the client sent after the command is
 * discarded (RFC 3207 §4.2, the STARTTLS command-injection fix); output queued before the
 * call goes out in clear. 0 or -1. */
int conn_starttls(struct conn *c, SSL_CTX *tls_ctx);
bool conn_is_tls(const struct conn *c);
/* conn_compress - from now on both directions are raw DEFLATE (RFC 1951, as IMAP
 * COMPRESS=DEFLATE wants it: RFC 4978), above TLS when TLS is on. Output queued before the
 * call goes out as it is; everything after, and everything the client sent after the
 * command (buffered input included), is compressed. Output is sync-flushed at the end of
 * each burst of writes. The inflated input is bounded by max_input like any input; a
 * corrupt stream is logged and ends the conn with on_event(CONN_ERROR). conn_starttls is
 * refused from then on. 0, or -1 when compression is on already or the conn is closing. */
int conn_compress(struct conn *c);
bool conn_is_compressed(const struct conn *c);
SSL *conn_ssl(const struct conn *c);
/* conn_pause / conn_resume - stop and restart on_input calls (input still buffered up to
 * the watermark); conn_resume re-runs on_input later if input is waiting. */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);
/* conn_output_full - true when more than 64 KiB of output waits for a peer that does not
 * read: input is then paused and resumes by itself once the output has drained. A session
 * checks this before each command so a client that never reads cannot grow our memory. */
bool conn_output_full(struct conn *c);
/* conn_close_after_flush - stop reading, send what is queued, then call on_closed (at the
 * latest 10 s later, or at once once the peer is gone). */
void conn_close_after_flush(struct conn *c);
const struct sockaddr *conn_peer(const struct conn *c);
const char *conn_peer_ip(const struct conn *c);	/* printable address */
bool conn_peer_is_loopback(const struct conn *c);
/* conn_output_pending - bytes queued and not yet sent. */
size_t conn_output_pending(const struct conn *c);

#endif
