/* siphash - SipHash-2-4 (Aumasson and Bernstein), the keyed hash of tables that clients
 * fill: with a random key a client cannot choose inputs that collide. Also the part of a
 * client's address that identifies it for such tables. */
#ifndef TERN_SIPHASH_H
#define TERN_SIPHASH_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* siphash24 - SipHash-2-4 of in[0..len) under key (reference algorithm). */
uint64_t siphash24(const uint64_t key[2], const unsigned char *in, size_t len);
/* siphash_client_bytes - the bytes that identify a client: a family byte then IPv4 (also
 * when mapped into IPv6) or the first 64 bits of IPv6 (one host usually owns a whole /64).
 * Returns how many bytes went into out (5 or 9), 0 for other families and NULL. */
size_t siphash_client_bytes(const struct sockaddr *sa, unsigned char out[17]);

#endif
