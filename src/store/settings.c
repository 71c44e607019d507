/* settings - the store's process-wide settings (see store.h) */
#include "store/store.h"
#include "store/store_private.h"

static struct store_settings settings = {
	.busy_timeout_ms = STORE_BUSY_TIMEOUT_DEFAULT,
	.expunge_keep = STORE_EXPUNGE_KEEP_DEFAULT,
};

void store_settings_set(const struct store_settings *set)
{
	settings.busy_timeout_ms = set->busy_timeout_ms ? set->busy_timeout_ms
							: STORE_BUSY_TIMEOUT_DEFAULT;
	settings.expunge_keep = set->expunge_keep ? set->expunge_keep : STORE_EXPUNGE_KEEP_DEFAULT;
}

void store_settings_get(struct store_settings *set_r)
{
	*set_r = settings;
}

const struct store_settings *store_settings_current(void)
{
	return &settings;
}
