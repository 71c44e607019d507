/* cmd_trace - "tern trace ID": the story of one message (see docs/architecture.md,
 * "Message trace"). */
#ifndef TERN_CLI_CMD_TRACE_H
#define TERN_CLI_CMD_TRACE_H

/* cmd_trace - argv[0] is "trace"; the exit status (1: no such message). */
int cmd_trace(int argc, char **argv);

#endif
