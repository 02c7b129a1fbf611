/*
 * Forced in front of the README example (-include) to make one of its
 * calls fail: the example must then print crdt_strerror's message and
 * exit with status 1 (check_readme_fail.sh), not report success or turn
 * the code into 0/1 silently. The header's include guard keeps the
 * example's own #include from redeclaring crdt_lww_get under the macro.
 */
#include <crdt/crdt.h>
#define crdt_lww_get(l, v, n) ((void)(l), (void)(v), (void)(n), CRDT_ENOTFOUND)
