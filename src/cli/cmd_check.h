/* cmd_check - "tern check [DOMAIN]": validates the configuration and the files it names (data
 * dir, [tls] dir, certificate and key, dkim_dir), then looks up each domain's DNS records (MX,
 * the host name's A/AAAA and their PTR, SPF, DKIM, DMARC, MTA-STS, TLS-RPT) and checks the
 * certificate's names, expiry and chain. One line per check on stdout: "ok", "warning" or
 * "error", the subject, and what was found, with the exact record to publish when one is
 * missing or wrong. Only reads. Exit status: 0 all ok, 1 warnings only, 2 errors, 64 usage. */
#ifndef TERN_CMD_CHECK_H
#define TERN_CMD_CHECK_H

/* cmd_check - argv[0] is "check" */
int cmd_check(int argc, char **argv);

#endif
