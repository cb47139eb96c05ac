/*
 * The public API's option bags, read with the TypeScript compiler: for every
 * function, constructor and public method exported by the package's entry
 * points, every parameter whose type is (or unions in) an interface or type
 * literal of src/ that holds only data (no methods: a lab or a worker is an
 * API object, not options) must document each of its properties, and no
 * parameter may be typed `any`; so must every data-only option type the
 * entry points export by name (…Options, …Args, …Params, …Init, …Config: a
 * type a caller builds on its own). undocumented() lists what breaks that, as
 * "file:line property" (each declaration once) and "where(param): any".
 */
import ts from "typescript";

const OPTION_TYPE = /(Options|Args|Params|Init|Config)$/;

export function undocumented(root: string, entries: string[]): string[] {
  const config = ts.getParsedCommandLineOfConfigFile(`${root}tsconfig.json`, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  const program = ts.createProgram(entries, config!.options);
  const checker = program.getTypeChecker();
  const found = new Set<string>();
  const internal = (d: ts.Node) => ts.getJSDocTags(d).some((t) => t.tagName.text === "internal");
  const documented = (sym: ts.Symbol) => ts.displayPartsToString(sym.getDocumentationComment(checker)).trim().length > 0;
  const isMethod = (p: ts.Symbol) => p.valueDeclaration !== undefined
    && (ts.isMethodSignature(p.valueDeclaration) || ts.isMethodDeclaration(p.valueDeclaration));

  function optionProps(type: ts.Type, seen: Set<ts.Type>): ts.Symbol[] {
    if (seen.has(type)) return [];
    seen.add(type);
    if (type.isUnion()) return type.types.flatMap((t) => optionProps(t, seen));
    if ((type.flags & ts.TypeFlags.Object) === 0 || type.getCallSignatures().length > 0) return [];
    const decl = type.getSymbol()?.declarations?.[0];
    if (decl === undefined || !decl.getSourceFile().fileName.startsWith(`${root}src/`)) return [];
    if (!ts.isInterfaceDeclaration(decl) && !ts.isTypeLiteralNode(decl)) return [];
    const props = checker.getPropertiesOfType(type);
    return props.some(isMethod) ? [] : props;
  }

  function checkProps(props: ts.Symbol[]): void {
    for (const prop of props) {
      if (documented(prop)) continue;
      const d = prop.declarations![0];
      const sf = d.getSourceFile();
      found.add(`${sf.fileName.slice(root.length)}:${sf.getLineAndCharacterOfPosition(d.getStart()).line + 1} ${prop.name}`);
    }
  }

  function checkSignature(sig: ts.Signature, where: string): void {
    if (sig.declaration !== undefined && internal(sig.declaration)) return;
    for (const p of sig.getParameters()) {
      const t = checker.getTypeOfSymbolAtLocation(p, p.valueDeclaration!);
      if ((t.flags & ts.TypeFlags.Any) !== 0) found.add(`${where}(${p.name}): any`);
      checkProps(optionProps(t, new Set()));
    }
  }

  const publicMembers = (type: ts.Type) => checker.getPropertiesOfType(type).filter((s) => {
    const d = s.valueDeclaration;
    return d !== undefined && (ts.getCombinedModifierFlags(d as ts.Declaration) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) === 0 && !internal(d);
  });

  for (const file of entries) {
    for (let sym of checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file)!)!)) {
      if ((sym.flags & ts.SymbolFlags.Alias) !== 0) sym = checker.getAliasedSymbol(sym);
      const decl = sym.declarations?.[0];
      if (decl === undefined) continue;
      if (ts.isClassDeclaration(decl)) {
        const statics = checker.getTypeOfSymbolAtLocation(sym, decl);
        for (const sig of statics.getConstructSignatures()) checkSignature(sig, `new ${sym.name}`);
        for (const [type, sep] of [[statics, "."], [checker.getDeclaredTypeOfSymbol(sym), "#"]] as const) {
          for (const m of publicMembers(type)) {
            for (const sig of checker.getTypeOfSymbolAtLocation(m, m.valueDeclaration!).getCallSignatures()) checkSignature(sig, `${sym.name}${sep}${m.name}`);
          }
        }
      } else if (ts.isFunctionDeclaration(decl)) {
        for (const sig of checker.getTypeOfSymbolAtLocation(sym, decl).getCallSignatures()) checkSignature(sig, sym.name);
      } else if ((ts.isInterfaceDeclaration(decl) || ts.isTypeAliasDeclaration(decl)) && !internal(decl) && OPTION_TYPE.test(sym.name)) {
        checkProps(optionProps(checker.getDeclaredTypeOfSymbol(sym), new Set()));
      }
    }
  }
  return [...found].sort();
}
