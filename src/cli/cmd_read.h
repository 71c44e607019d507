/* cmd_read - "tern read": list, show, save, delete and move mail over IMAP or POP3, and list
 * IMAP folders. argv[0] is "read". Returns a sysexits.h status (0 on success). */
#ifndef TERN_CMD_READ_H
#define TERN_CMD_READ_H

int cmd_read(int argc, char **argv);

#endif
