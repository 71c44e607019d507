/* client/html - HTML mail bodies as readable plain text for `tern read show`: tags
 * stripped (script, style, head and comments with their content), block elements
 * (p, div, br, li, tr, h1-h6, blockquote, table, hr) become line or paragraph breaks,
 * runs of blanks in text collapse to one space as a browser shows them (inside <pre>
 * they are kept), character references decoded (named: the common ones; numeric: any
 * valid code point, others become U+FFFD). Input and output are UTF-8. */
#ifndef TERN_CLIENT_HTML_H
#define TERN_CLIENT_HTML_H
#include <stddef.h>
#include "lib/buf.h"

/* html_to_text - append the text of html[0..len) to out: no leading or trailing blank
 * lines, at most one empty line in a row, ending with a line end when not empty. */
void html_to_text(const char *html, size_t len, buf *out);

#endif
