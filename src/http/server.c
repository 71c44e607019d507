/* http/server - evhttp listeners and the routes of the HTTP role */
#include "http/server.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http/autoconfig.h"
#include "http/parse.h"
#include "lib/connlimit.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "lib/xmalloc.h"

#define HTTP_MAX_HEADERS 8192		/* request line and headers, bytes */
#define HTTP_MAX_BODY 16384		/* an autodiscover request is well under 1 KiB */
#define HTTP_ACCEPT_PAUSE_MS 1000	/* accept failed (descriptors): wait this long */
#define ACME_MAX_FILE 4096		/* a key authorization is under 100 bytes */
#define ACME_PREFIX "/.well-known/acme-challenge/"

enum http_site_kind { SITE_HTTP, SITE_HTTPS, SITE_METRICS, SITE_COUNT };

struct http_server;

/* one listener kind: its evhttp and the socket it accepts on */
struct http_site {
	struct http_server *srv;
	enum http_site_kind kind;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct event *resume;		/* after an accept error */
};

struct http_server {
	struct event_base *base;
	const struct tern_config *cfg;
	SSL_CTX *tls;
	unsigned long refused;		/* connections over a cap */
	unsigned n_conns, max_conns;	/* counted connections in this worker; 0: no cap */
	struct http_site sites[SITE_COUNT];
};

/* reply - answer req with code and a body of type ctype (body may be NULL) */
static void reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
		  struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	if (ctype != NULL)
		evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

/* reply_text - a short text/plain answer */
static void reply_text(struct evhttp_request *req, int code, const char *reason,
		       const char *text)
{
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		log_fatalx("out of memory");
	evbuffer_add(b, text, strlen(text));
	reply(req, code, reason, "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

static void not_found(struct evhttp_request *req)
{
	reply_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
}

/* serve_metrics - the metrics listener: /metrics and nothing else */
static void serve_metrics(struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	if (strcmp(path, "/metrics") != 0) {
		not_found(req);
		return;
	}
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		reply_text(req, 405, "Method Not Allowed", "GET or HEAD\n");
		return;
	}
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		log_fatalx("out of memory");
	metrics_render(b);
	reply(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}

/* read_challenge - the key authorization in the file token of dir (root's, 0755), at most
 * ACME_MAX_FILE bytes, into out. A symlink, a FIFO or anything but a plain file is absent:
 * the directory is root's, but nothing here follows a name it did not choose. Its length,
 * or -1. A small local file: reading it does not hold the event loop. */
static ssize_t read_challenge(const char *dir, const char *token, char *out)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	int fd = openat(dfd, token, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	close(dfd);
	if (fd < 0)
		return -1;
	struct stat st;
	ssize_t len = -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= ACME_MAX_FILE) {
		size_t got = 0;
		for (;;) {
			ssize_t n = read(fd, out + got, ACME_MAX_FILE - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				break;
			got += (size_t)n;
			if (n == 0 || got == ACME_MAX_FILE) {
				len = (ssize_t)got;
				break;
			}
		}
	}
	close(fd);
	return len;
}

/* serve_acme - GET /.well-known/acme-challenge/TOKEN (RFC 8555 §8.3), any Host */
static void serve_acme(struct http_site *site, struct evhttp_request *req, const char *token)
{
	char body[ACME_MAX_FILE];
	ssize_t len = -1;
	if (http_acme_token_valid(token))
		len = read_challenge(site->srv->cfg->acme_challenge_dir, token, body);
	/* the token is base64url (printable, no spaces) when len >= 0: safe to log */
	char *peer = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
	if (len < 0) {
		if (http_acme_token_valid(token))
			log_info("http: acme challenge %s: not found (from %s)", token,
				 peer != NULL ? peer : "?");
		not_found(req);
		return;
	}
	log_info("http: acme challenge %s: served to %s", token, peer != NULL ? peer : "?");
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		log_fatalx("out of memory");
	evbuffer_add(b, body, (size_t)len);
	reply(req, HTTP_OK, "OK", "application/octet-stream", b);
	evbuffer_free(b);
}

/* reply_doc - answer with a document made by make(out, cfg, arg) */
static void reply_doc(struct evhttp_request *req, const char *ctype,
		      void (*make)(struct evbuffer *, const struct tern_config *, const char *),
		      const struct tern_config *cfg, const char *arg)
{
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		log_fatalx("out of memory");
	make(b, cfg, arg);
	reply(req, HTTP_OK, "OK", ctype, b);
	evbuffer_free(b);
}

/* host_header - the request's Host header, or "" */
static const char *host_header(struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
	return h != NULL ? h : "";
}

/* query_email - the emailaddress= of the query: 1 with a valid address of one of our domains
 * in email (*domain_r: ours, lower case), 0 when there is none, -1 when it is bad or not
 * ours */
static int query_email(const struct tern_config *cfg, struct evhttp_request *req,
		       char email[HTTP_EMAIL_MAX + 1], const char **domain_r)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	int r = query != NULL ? http_query_param(query, "emailaddress", email,
						 HTTP_EMAIL_MAX + 1) : 0;
	if (r <= 0)
		return r;
	const char *d;
	if (!http_email_valid(email, &d))
		return -1;
	*domain_r = http_host_domain(d, "", cfg->domains, cfg->n_domains);
	return *domain_r != NULL ? 1 : -1;
}

/* serve_thunderbird - /mail/config-v1.1.xml (Host autoconfig.DOMAIN) and
 * /.well-known/autoconfig/mail/config-v1.1.xml (Host DOMAIN): the domain of ?emailaddress=
 * when one is given, else the Host's; ours or 404 */
static void serve_thunderbird(struct http_site *site, struct evhttp_request *req)
{
	const struct tern_config *cfg = site->srv->cfg;
	char email[HTTP_EMAIL_MAX + 1];
	const char *domain = NULL;
	int r = query_email(cfg, req, email, &domain);
	if (r == 0) {
		const char *host = host_header(req);
		domain = http_host_domain(host, "autoconfig.", cfg->domains, cfg->n_domains);
		if (domain == NULL)
			domain = http_host_domain(host, "", cfg->domains, cfg->n_domains);
	}
	if (domain == NULL) {
		not_found(req);
		return;
	}
	reply_doc(req, "application/xml; charset=utf-8", autoconfig_thunderbird, cfg, domain);
}

/* serve_outlook - POST /autodiscover/autodiscover.xml: the <EMailAddress> of the request
 * body (at most HTTP_MAX_BODY, evhttp's limit) */
static void serve_outlook(struct http_site *site, struct evhttp_request *req)
{
	const struct tern_config *cfg = site->srv->cfg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
	char email[HTTP_EMAIL_MAX + 1];
	const char *d;
	if (body == NULL || http_autodiscover_email(body, len, email, sizeof(email)) != 1 ||
	    !http_email_valid(email, &d)) {
		reply_text(req, HTTP_BADREQUEST, "Bad Request", "no EMailAddress\n");
		return;
	}
	if (http_host_domain(d, "", cfg->domains, cfg->n_domains) == NULL) {
		not_found(req);
		return;
	}
	reply_doc(req, "application/xml; charset=utf-8", autoconfig_outlook, cfg, email);
}

/* serve_apple - /apple/tern.mobileconfig?emailaddress=ADDRESS (one of our domains) */
static void serve_apple(struct http_site *site, struct evhttp_request *req)
{
	const struct tern_config *cfg = site->srv->cfg;
	char email[HTTP_EMAIL_MAX + 1];
	const char *domain;
	if (query_email(cfg, req, email, &domain) != 1) {
		not_found(req);
		return;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Disposition", "attachment; filename=\"tern.mobileconfig\"");
	reply_doc(req, "application/x-apple-aspen-config", autoconfig_apple, cfg, email);
}

/* mta_sts - autoconfig_mta_sts in reply_doc's shape */
static void mta_sts(struct evbuffer *out, const struct tern_config *cfg, const char *unused)
{
	autoconfig_mta_sts(out, cfg);
}

/* serve_mta_sts - /.well-known/mta-sts.txt with Host mta-sts.DOMAIN (RFC 8461 §3.3) */
static void serve_mta_sts(struct http_site *site, struct evhttp_request *req)
{
	const struct tern_config *cfg = site->srv->cfg;
	if (http_host_domain(host_header(req), "mta-sts.", cfg->domains, cfg->n_domains) == NULL) {
		not_found(req);
		return;
	}
	reply_doc(req, "text/plain", mta_sts, cfg, NULL);
}

/* serve_web - the http and https listeners: a route table by path and method */
static void serve_web(struct http_site *site, struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	bool get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
	if (strncmp(path, ACME_PREFIX, sizeof(ACME_PREFIX) - 1) == 0 && get)
		serve_acme(site, req, path + sizeof(ACME_PREFIX) - 1);
	else if ((!strcmp(path, "/mail/config-v1.1.xml") ||
		  !strcmp(path, "/.well-known/autoconfig/mail/config-v1.1.xml")) && get)
		serve_thunderbird(site, req);
	else if (!strcasecmp(path, "/autodiscover/autodiscover.xml") && m == EVHTTP_REQ_POST)
		serve_outlook(site, req);
	else if (!strcmp(path, "/apple/tern.mobileconfig") && get)
		serve_apple(site, req);
	else if (!strcmp(path, "/.well-known/mta-sts.txt") && get)
		serve_mta_sts(site, req);
	else if (m == EVHTTP_REQ_POST)
		reply_text(req, 405, "Method Not Allowed", "method not allowed\n");
	else
		not_found(req);
}

/* on_request - every request of every listener */
static void on_request(struct evhttp_request *req, void *arg)
{
	struct http_site *site = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || path[0] != '/') {
		reply_text(req, HTTP_BADREQUEST, "Bad Request", "bad request\n");
		return;
	}
	if (site->kind == SITE_METRICS)
		serve_metrics(req, path);
	else
		serve_web(site, req, path);
}

/* One connection's place in the per-client count (lib/connlimit, shared with the mail
 * roles). evhttp 2.1 gives no hook between accept and its connection: bevcb makes the
 * connection's bufferevent (holding a reference of its own, so that it stays valid) and
 * a zero-time callback, run once evhttp has given it its socket, finds the connection (the
 * bufferevent's callback argument, which bufferevent_free clears when evhttp is done with
 * it) and counts the client, to be released by the connection's close callback, or refuses
 * it. */
struct http_conn {
	struct bufferevent *bev;	/* until conn_check */
	struct http_server *srv;
	struct sockaddr_storage peer;
};

/* conn_closed - evhttp frees a counted connection */
static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct http_conn *c = arg;
	connlimit_release((const struct sockaddr *)&c->peer);
	c->srv->n_conns--;
	free(c);
}

/* conn_check - right after accept: count the client, or refuse it when it has
 * max_connections_per_ip connections already (over every role and worker) or the worker
 * has max_conns HTTP connections */
static void conn_check(evutil_socket_t unused, short what, void *arg)
{
	struct http_conn *c = arg;
	struct bufferevent *bev = c->bev;
	bufferevent_event_cb eventcb = NULL;
	void *cbarg = NULL;
	bufferevent_getcb(bev, NULL, NULL, &eventcb, &cbarg);
	struct evhttp_connection *evcon = eventcb != NULL ? cbarg : NULL;
	evutil_socket_t fd = bufferevent_getfd(bev);
	socklen_t len = sizeof(c->peer);
	if (evcon == NULL || fd < 0 || getpeername(fd, (struct sockaddr *)&c->peer, &len) < 0) {
		/* already over (evhttp freed it) or going: nothing to count */
		bufferevent_decref(bev);
		free(c);
		return;
	}
	struct http_server *srv = c->srv;
	bool full = srv->max_conns != 0 && srv->n_conns >= srv->max_conns;
	if (!full && connlimit_acquire((const struct sockaddr *)&c->peer,
				       srv->cfg->max_connections_per_ip)) {
		srv->n_conns++;
		c->bev = NULL;
		evhttp_connection_set_closecb(evcon, conn_closed, c);
		bufferevent_decref(bev);
		return;
	}
	char ip[64];
	srv->refused++;
	if (full)
		log_info("http: refused %s: %u HTTP connections in this worker "
			 "(max_connections_per_worker); %lu refused so far",
			 net_ntop((const struct sockaddr *)&c->peer, ip, sizeof(ip)), srv->n_conns,
			 srv->refused);
	else
		log_info("http: refused %s: %u connections from it (max_connections_per_ip); "
			 "%lu refused so far",
			 net_ntop((const struct sockaddr *)&c->peer, ip, sizeof(ip)),
			 connlimit_count((const struct sockaddr *)&c->peer), srv->refused);
	evhttp_connection_free(evcon);
	bufferevent_decref(bev);	/* the last reference: closes the socket */
	free(c);
}

/* new_bev - the bufferevent of a new connection (evhttp sets its descriptor): plain, or TLS
 * on the https listener. Never NULL: evhttp would fall back to a plain-text connection (on
 * the https port too). */
static struct bufferevent *new_bev(struct event_base *base, bool tls, struct http_server *srv)
{
	struct bufferevent *bev;
	if (tls) {
		SSL *ssl = SSL_new(srv->tls);
		if (ssl == NULL)
			log_fatalx("https: SSL_new failed");
		bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
						     BEV_OPT_CLOSE_ON_FREE);
		if (bev == NULL)
			log_fatalx("https: bufferevent_openssl_socket_new failed");
		/* HTTP clients often close without close_notify: that is the end of the request */
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
		if (bev == NULL)
			log_fatalx("http: bufferevent_socket_new failed");
	}
	struct http_conn *c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->bev = bev;
	bufferevent_incref(bev);
	struct timeval now = { 0, 0 };
	if (event_base_once(base, -1, EV_TIMEOUT, conn_check, c, &now) < 0)
		log_fatalx("http: event_base_once failed");
	return bev;
}

static struct bufferevent *http_bev(struct event_base *base, void *arg)
{
	return new_bev(base, false, arg);
}

static struct bufferevent *https_bev(struct event_base *base, void *arg)
{
	return new_bev(base, true, arg);
}

static void resume_accept(evutil_socket_t fd, short what, void *arg)
{
	struct http_site *site = arg;
	if (site->bound != NULL)
		evconnlistener_enable(evhttp_bound_socket_get_listener(site->bound));
}

/* accept_error - out of descriptors (or another accept error): pause instead of spinning */
static void accept_error(struct evconnlistener *l, void *arg)
{
	struct http_site *site = arg;
	log_warn("http: accept");
	evconnlistener_disable(l);
	struct timeval tv = { HTTP_ACCEPT_PAUSE_MS / 1000, (HTTP_ACCEPT_PAUSE_MS % 1000) * 1000 };
	event_add(site->resume, &tv);
}

/* site_start - an evhttp with the role's limits accepting on fd */
static void site_start(struct http_server *srv, enum http_site_kind kind, int fd)
{
	struct http_site *site = &srv->sites[kind];
	site->srv = srv;
	site->kind = kind;
	site->http = evhttp_new(srv->base);
	if (site->http == NULL)
		log_fatalx("evhttp_new failed");
	evhttp_set_max_headers_size(site->http, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(site->http, kind == SITE_METRICS ? 0 : HTTP_MAX_BODY);
	evhttp_set_timeout(site->http, (int)srv->cfg->http_timeout);
	evhttp_set_allowed_methods(site->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
						       (kind == SITE_METRICS ? 0 : EVHTTP_REQ_POST));
	evhttp_set_gencb(site->http, on_request, site);
	evhttp_set_bevcb(site->http, kind == SITE_HTTPS ? https_bev : http_bev, srv);
	site->bound = evhttp_accept_socket_with_handle(site->http, fd);
	if (site->bound == NULL)
		log_fatalx("evhttp_accept_socket failed");
	site->resume = evtimer_new(srv->base, resume_accept, site);
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(site->bound), accept_error);
}

struct http_server *http_server_new(struct event_base *base, const struct tern_config *cfg,
				    SSL_CTX *tls, const int *listen_fds, unsigned max_conns)
{
	static const enum listen_role roles[SITE_COUNT] = { ROLE_HTTP, ROLE_HTTPS, ROLE_METRICS };
	bool any = false;
	for (int k = 0; k < SITE_COUNT; k++)
		any = any || listen_fds[roles[k]] >= 0;
	if (!any)
		return NULL;
	struct http_server *srv = xcalloc(1, sizeof(*srv));
	srv->base = base;
	srv->cfg = cfg;
	srv->tls = tls;
	srv->max_conns = max_conns;
	for (int k = 0; k < SITE_COUNT; k++)
		if (listen_fds[roles[k]] >= 0)
			site_start(srv, (enum http_site_kind)k, listen_fds[roles[k]]);
	return srv;
}

void http_server_drain(struct http_server *srv)
{
	if (srv == NULL)
		return;
	for (int k = 0; k < SITE_COUNT; k++) {
		struct http_site *site = &srv->sites[k];
		if (site->bound != NULL) {
			event_del(site->resume);
			evconnlistener_disable(evhttp_bound_socket_get_listener(site->bound));
		}
	}
}

void http_server_free(struct http_server **srvp)
{
	struct http_server *srv = *srvp;
	if (srv == NULL)
		return;
	for (int k = 0; k < SITE_COUNT; k++) {
		struct http_site *site = &srv->sites[k];
		if (site->http != NULL)
			evhttp_free(site->http);	/* its connections and listener too */
		if (site->resume != NULL)
			event_free(site->resume);
	}
	free(srv);
	*srvp = NULL;
}
