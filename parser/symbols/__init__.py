"""Addresses to names: a HeapProfile's stacks symbolized (symbolize), with their Python
frames, the allocator's own frames cut, and the tree-format stacks merged as the reports
take them. The SymbolizedProfile made here is the model the later stages read."""
