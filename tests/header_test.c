/*
 * Built once per public header with -DHEADER="crdt/<name>.h": a header
 * that needs anything it does not include itself fails to compile here.
 * Including it twice checks the include guard.
 */
#include HEADER
#include HEADER

int
main(void)
{
	return 0;
}
