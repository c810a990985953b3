"""An import-linter contract type the stock ones lack: modules that import only the standard library."""
from __future__ import annotations

import sys

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class StandardLibraryOnlyContract(Contract):
    """``source_modules`` (and their descendants) import only the standard library and themselves.

    Needs ``include_external_packages = True``: an external import is then a node of the graph.
    """

    type_name = "standard_library_only"
    source_modules = fields.ListField(subfield=fields.ModuleField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        offenders: list[tuple[str, str, int]] = []
        for source in self.source_modules:  # type: ignore[attr-defined]
            own = {source.name} | graph.find_descendants(source.name)
            for module in sorted(own):
                for imported in sorted(graph.find_modules_directly_imported_by(module)):
                    if imported in own or imported.split(".")[0] in sys.stdlib_module_names:
                        continue
                    details = graph.get_import_details(importer=module, imported=imported)
                    offenders.append((module, imported, details[0]["line_number"] if details else 0))
        return ContractCheck(kept=not offenders, metadata={"offenders": offenders})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, imported, line in check.metadata["offenders"]:
            output.print_error(f"{module} imports {imported} (line {line})")
            output.new_line()
