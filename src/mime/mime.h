/* mime - everything mime/ offers, for callers that want one include.
 * Layering: mime/ uses only lib/ (and iconv from libc); it never calls store/ or protocols. */
#ifndef TERN_MIME_H
#define TERN_MIME_H
#include "mime/address.h"
#include "mime/date.h"
#include "mime/decode.h"
#include "mime/encword.h"
#include "mime/header.h"
#include "mime/param.h"
#include "mime/tree.h"
#endif
