"""Operations on a symbolized profile: flat and cumulative sums per name (aggregate), one
profile minus another (diff), keeping or dropping stacks (focus), the call graph, the
flame graph's tree, and what each stack's memory is for (categories)."""
