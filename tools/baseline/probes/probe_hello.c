/* Baseline probe: the smallest program (start-up code only). */
#include <stdio.h>
int main(void) { puts("hello"); return 0; }
