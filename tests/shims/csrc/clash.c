/* Built twice with different HELPER_VALUE: both export `helper`, the classic clash. */
int helper(void) { return HELPER_VALUE; }
int value_via_helper(void) { return helper(); }
