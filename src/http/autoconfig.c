/* http/autoconfig - client configuration documents and the MTA-STS policy */
#include "http/autoconfig.h"

#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/xmalloc.h"

/* a mail listener as a client sees it */
struct offer {
	enum listen_role role;
	const char *proto;	/* "imap", "pop3", "smtp" */
	bool implicit_tls;	/* else STARTTLS */
};

/* in the order of preference: implicit TLS first (RFC 8314 §3) */
static const struct offer incoming[] = {
	{ ROLE_IMAPS, "imap", true },
	{ ROLE_IMAP, "imap", false },
	{ ROLE_POP3S, "pop3", true },
	{ ROLE_POP3, "pop3", false },
};
static const struct offer outgoing[] = {
	{ ROLE_SUBMISSIONS, "smtp", true },
	{ ROLE_SUBMISSION, "smtp", false },
};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* listen_port - the port of a configured listener, 0 when not configured */
static unsigned listen_port(const struct tern_config *cfg, enum listen_role r)
{
	const struct listen_spec *l = &cfg->listen[r];
	if (!l->enabled)
		return 0;
	if (l->addr.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
	if (l->addr.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
	return 0;
}

void xml_escape(struct evbuffer *out, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			evbuffer_add(out, "&amp;", 5);
			break;
		case '<':
			evbuffer_add(out, "&lt;", 4);
			break;
		case '>':
			evbuffer_add(out, "&gt;", 4);
			break;
		case '"':
			evbuffer_add(out, "&quot;", 6);
			break;
		case '\'':
			evbuffer_add(out, "&apos;", 6);
			break;
		default:
			evbuffer_add(out, s, 1);
		}
	}
}

/* element - "<name>escaped text</name>" on a line of its own, indented */
static void element(struct evbuffer *out, const char *indent, const char *name, const char *text)
{
	evbuffer_add_printf(out, "%s<%s>", indent, name);
	xml_escape(out, text);
	evbuffer_add_printf(out, "</%s>\n", name);
}

/* tb_server - one incomingServer or outgoingServer of the clientConfig */
static void tb_server(struct evbuffer *out, const struct tern_config *cfg, const char *tag,
		      const struct offer *o, unsigned port)
{
	char num[16];
	snprintf(num, sizeof(num), "%u", port);
	evbuffer_add_printf(out, "    <%s type=\"%s\">\n", tag, o->proto);
	element(out, "      ", "hostname", cfg->hostname);
	element(out, "      ", "port", num);
	element(out, "      ", "socketType", o->implicit_tls ? "SSL" : "STARTTLS");
	element(out, "      ", "username", "%EMAILADDRESS%");
	element(out, "      ", "authentication", "password-cleartext");
	evbuffer_add_printf(out, "    </%s>\n", tag);
}

void autoconfig_thunderbird(struct evbuffer *out, const struct tern_config *cfg,
			    const char *domain)
{
	evbuffer_add_printf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
				 "<clientConfig version=\"1.1\">\n  <emailProvider id=\"");
	xml_escape(out, domain);
	evbuffer_add_printf(out, "\">\n");
	element(out, "    ", "domain", domain);
	element(out, "    ", "displayName", domain);
	element(out, "    ", "displayShortName", domain);
	for (size_t i = 0; i < N_OF(incoming); i++) {
		unsigned port = listen_port(cfg, incoming[i].role);
		if (port != 0)
			tb_server(out, cfg, "incomingServer", &incoming[i], port);
	}
	for (size_t i = 0; i < N_OF(outgoing); i++) {
		unsigned port = listen_port(cfg, outgoing[i].role);
		if (port != 0)
			tb_server(out, cfg, "outgoingServer", &outgoing[i], port);
	}
	evbuffer_add_printf(out, "  </emailProvider>\n</clientConfig>\n");
}

/* ol_protocol - one <Protocol> of the autodiscover response */
static void ol_protocol(struct evbuffer *out, const struct tern_config *cfg, const char *email,
			const struct offer *o, unsigned port)
{
	char num[16];
	snprintf(num, sizeof(num), "%u", port);
	const char *in = "      ";
	evbuffer_add_printf(out, "    <Protocol>\n");
	element(out, in, "Type", !strcmp(o->proto, "imap") ? "IMAP"
				 : !strcmp(o->proto, "pop3") ? "POP3" : "SMTP");
	element(out, in, "Server", cfg->hostname);
	element(out, in, "Port", num);
	element(out, in, "LoginName", email);
	element(out, in, "DomainRequired", "off");
	element(out, in, "SPA", "off");
	element(out, in, "SSL", "on");
	element(out, in, "Encryption", o->implicit_tls ? "SSL" : "TLS");
	element(out, in, "AuthRequired", "on");
	if (!strcmp(o->proto, "smtp")) {
		element(out, in, "UsePOPAuth", "off");
		element(out, in, "SMTPLast", "off");
	}
	evbuffer_add_printf(out, "    </Protocol>\n");
}

void autoconfig_outlook(struct evbuffer *out, const struct tern_config *cfg, const char *email)
{
	evbuffer_add_printf(out,
		"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
		"<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
		"responseschema/2006\">\n"
		"<Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/"
		"responseschema/2006a\">\n  <User>\n");
	element(out, "    ", "DisplayName", email);
	evbuffer_add_printf(out, "  </User>\n  <Account>\n");
	element(out, "    ", "AccountType", "email");
	element(out, "    ", "Action", "settings");
	/* the best one of each kind: Outlook takes the first IMAP, POP3 and SMTP block */
	bool imap = false, pop3 = false;
	for (size_t i = 0; i < N_OF(incoming); i++) {
		unsigned port = listen_port(cfg, incoming[i].role);
		bool is_imap = !strcmp(incoming[i].proto, "imap");
		if (port == 0 || (is_imap ? imap : pop3))
			continue;
		ol_protocol(out, cfg, email, &incoming[i], port);
		*(is_imap ? &imap : &pop3) = true;
	}
	for (size_t i = 0; i < N_OF(outgoing); i++) {
		unsigned port = listen_port(cfg, outgoing[i].role);
		if (port != 0) {
			ol_protocol(out, cfg, email, &outgoing[i], port);
			break;
		}
	}
	evbuffer_add_printf(out, "  </Account>\n</Response>\n</Autodiscover>\n");
}

/* profile_uuid - a UUID (version 4 form) derived from what and the host name: the same
 * address gets the same profile, which then replaces itself when installed again */
static void profile_uuid(const struct tern_config *cfg, const char *what, char out[37])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, cfg->hostname, strlen(cfg->hostname) + 1) != 1 ||
	    EVP_DigestUpdate(ctx, what, strlen(what)) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen < 16)
		log_fatalx("sha256 failed");
	EVP_MD_CTX_free(ctx);
	md[6] = (unsigned char)((md[6] & 0x0f) | 0x40);
	md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X", md[0],
		 md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10], md[11],
		 md[12], md[13], md[14], md[15]);
}

/* plist_string - <key>k</key><string>escaped v</string> */
static void plist_string(struct evbuffer *out, const char *indent, const char *k, const char *v)
{
	evbuffer_add_printf(out, "%s<key>%s</key>\n", indent, k);
	element(out, indent, "string", v);
}

static void plist_int(struct evbuffer *out, const char *indent, const char *k, unsigned v)
{
	evbuffer_add_printf(out, "%s<key>%s</key>\n%s<integer>%u</integer>\n", indent, k, indent,
			    v);
}

static void plist_bool(struct evbuffer *out, const char *indent, const char *k, bool v)
{
	evbuffer_add_printf(out, "%s<key>%s</key>\n%s<%s/>\n", indent, k, indent,
			    v ? "true" : "false");
}

/* first_offer - the preferred configured listener of a list, or NULL */
static const struct offer *first_offer(const struct tern_config *cfg, const struct offer *list,
				       size_t n, unsigned *port_r)
{
	for (size_t i = 0; i < n; i++)
		if ((*port_r = listen_port(cfg, list[i].role)) != 0)
			return &list[i];
	return NULL;
}

void autoconfig_apple(struct evbuffer *out, const struct tern_config *cfg, const char *email)
{
	char uuid[37], account_uuid[37], ident[300];
	profile_uuid(cfg, email, uuid);
	char *acct = xasprintf("account:%s", email);
	profile_uuid(cfg, acct, account_uuid);
	free(acct);
	snprintf(ident, sizeof(ident), "tern.%s.%s", cfg->hostname, uuid);
	const char *d = "\t\t\t";
	evbuffer_add_printf(out,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "
		"\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
		"<plist version=\"1.0\">\n<dict>\n\t<key>PayloadContent</key>\n\t<array>\n\t\t<dict>\n");
	unsigned in_port = 0, out_port = 0;
	const struct offer *in = first_offer(cfg, incoming, N_OF(incoming), &in_port);
	const struct offer *sub = first_offer(cfg, outgoing, N_OF(outgoing), &out_port);
	plist_string(out, d, "EmailAccountDescription", email);
	plist_string(out, d, "EmailAccountName", email);
	plist_string(out, d, "EmailAccountType",
		     in != NULL && !strcmp(in->proto, "pop3") ? "EmailTypePOP" : "EmailTypeIMAP");
	plist_string(out, d, "EmailAddress", email);
	if (in != NULL) {
		plist_string(out, d, "IncomingMailServerAuthentication", "EmailAuthPassword");
		plist_string(out, d, "IncomingMailServerHostName", cfg->hostname);
		plist_int(out, d, "IncomingMailServerPortNumber", in_port);
		plist_bool(out, d, "IncomingMailServerUseSSL", true);
		plist_string(out, d, "IncomingMailServerUsername", email);
	}
	if (sub != NULL) {
		plist_string(out, d, "OutgoingMailServerAuthentication", "EmailAuthPassword");
		plist_string(out, d, "OutgoingMailServerHostName", cfg->hostname);
		plist_int(out, d, "OutgoingMailServerPortNumber", out_port);
		plist_bool(out, d, "OutgoingMailServerUseSSL", true);
		plist_string(out, d, "OutgoingMailServerUsername", email);
		plist_bool(out, d, "OutgoingPasswordSameAsIncomingPassword", true);
	}
	plist_string(out, d, "PayloadDescription", "E-mail account");
	plist_string(out, d, "PayloadDisplayName", email);
	char sub_ident[340];
	snprintf(sub_ident, sizeof(sub_ident), "%s.email", ident);
	plist_string(out, d, "PayloadIdentifier", sub_ident);
	plist_string(out, d, "PayloadType", "com.apple.mail.managed");
	plist_string(out, d, "PayloadUUID", account_uuid);
	plist_int(out, d, "PayloadVersion", 1);
	plist_bool(out, d, "PreventAppSheet", false);
	plist_bool(out, d, "PreventMove", false);
	plist_bool(out, d, "SMIMEEnabled", false);
	evbuffer_add_printf(out, "\t\t</dict>\n\t</array>\n");
	char name[300];
	snprintf(name, sizeof(name), "Mail: %s", email);
	plist_string(out, "\t", "PayloadDisplayName", name);
	plist_string(out, "\t", "PayloadIdentifier", ident);
	plist_bool(out, "\t", "PayloadRemovalDisallowed", false);
	plist_string(out, "\t", "PayloadType", "Configuration");
	plist_string(out, "\t", "PayloadUUID", uuid);
	plist_int(out, "\t", "PayloadVersion", 1);
	evbuffer_add_printf(out, "</dict>\n</plist>\n");
}

void autoconfig_mta_sts(struct evbuffer *out, const struct tern_config *cfg)
{
	const char *mode = cfg->mta_sts_mode == MTA_STS_ENFORCE ? "enforce"
			   : cfg->mta_sts_mode == MTA_STS_TESTING ? "testing" : "none";
	evbuffer_add_printf(out, "version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: %u\r\n", mode,
			    cfg->hostname, cfg->mta_sts_max_age);
}
