/* sasl - server side of SASL PLAIN (RFC 4616) and LOGIN, independent of the protocol.
 * The protocol sends the challenges (already base64) and feeds client responses (base64
 * text as received). */
#ifndef TERN_SASL_H
#define TERN_SASL_H
#include <stddef.h>

enum sasl_mech { SASL_PLAIN, SASL_LOGIN };

struct sasl_state {
	enum sasl_mech mech;
	int step;
	char *authcid;		/* user name, once known */
	char *password;		/* once known; wiped on free */
};

/* sasl_mech_parse - "PLAIN"/"LOGIN" (any case) -> mech; 0 or -1 for unsupported. */
int sasl_mech_parse(const char *name, enum sasl_mech *mech_r);
void sasl_begin(struct sasl_state *s, enum sasl_mech mech);
/* sasl_step - feed one client response (base64; "=" means empty; NULL when the client gave
 * no initial response). Returns 1 when user+password are known, 0 with *challenge_r set to
 * the base64 challenge to send (static string), -1 on a malformed response (*error_r static),
 * -2 when the client cancelled with "*". */
int sasl_step(struct sasl_state *s, const char *response, const char **challenge_r,
	      const char **error_r);
void sasl_free(struct sasl_state *s);

#endif
