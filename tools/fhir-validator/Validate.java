// Validates FHIR R4 JSON against the base specification with HAPI FHIR's instance validator,
// offline. Input: files (or stdin) holding NDJSON — one resource (usually a Bundle) per line — or
// one pretty-printed resource per file. Output: one line per issue at severity error or fatal
// (warnings with --warnings), prefixed with file:line; a summary on stderr. Exit status 0 when
// no errors, 1 when any input has errors, 2 on a usage or I/O problem.
//
// Runs with Java's single-file source launcher, so it needs no build step:
//   java -cp 'libs/*' Validate.java [--warnings] FILE...
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

public class Validate {
    public static void main(String[] args) throws Exception {
        boolean warnings = false;
        List<String> files = new ArrayList<>();
        for (String a : args) {
            if (a.equals("--warnings")) warnings = true;
            else files.add(a);
        }
        FhirContext ctx = FhirContext.forR4();
        ValidationSupportChain chain = new ValidationSupportChain(
            new DefaultProfileValidationSupport(ctx),
            new CommonCodeSystemsTerminologyService(ctx),
            new InMemoryTerminologyServerValidationSupport(ctx),
            new SnapshotGeneratingValidationSupport(ctx));
        FhirInstanceValidator module = new FhirInstanceValidator(chain);
        // Codes from LOINC/SNOMED etc. cannot be checked offline; unknown systems are not errors.
        module.setAnyExtensionsAllowed(true);
        FhirValidator validator = ctx.newValidator().registerValidatorModule(module);

        int resources = 0, errors = 0, bad = 0;
        List<String[]> inputs = new ArrayList<>();
        if (files.isEmpty()) {
            BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            StringBuilder sb = new StringBuilder();
            String l;
            while ((l = r.readLine()) != null) sb.append(l).append('\n');
            inputs.add(new String[] {"<stdin>", sb.toString()});
        } else {
            for (String f : files) inputs.add(new String[] {f, Files.readString(Path.of(f), StandardCharsets.UTF_8)});
        }
        for (String[] in : inputs) {
            String name = in[0], text = in[1];
            String trimmed = text.trim();
            List<String> docs = new ArrayList<>();
            List<Integer> lines = new ArrayList<>();
            // A pretty-printed document spans lines; NDJSON has one document per line.
            if (trimmed.startsWith("{") && trimmed.indexOf("\n{") < 0 && trimmed.contains("\n")) {
                docs.add(trimmed); lines.add(1);
            } else {
                String[] ls = text.split("\n", -1);
                for (int i = 0; i < ls.length; i++) if (!ls[i].isBlank()) { docs.add(ls[i]); lines.add(i + 1); }
            }
            for (int i = 0; i < docs.size(); i++) {
                resources++;
                ValidationResult result = validator.validateWithResult(docs.get(i));
                boolean any = false;
                for (SingleValidationMessage m : result.getMessages()) {
                    ResultSeverityEnum s = m.getSeverity();
                    boolean isError = s == ResultSeverityEnum.ERROR || s == ResultSeverityEnum.FATAL;
                    if (isError) { errors++; any = true; }
                    if (isError || (warnings && s == ResultSeverityEnum.WARNING)) {
                        System.out.println(name + ":" + lines.get(i) + ": " + s.getCode() + ": "
                            + m.getLocationString() + ": " + m.getMessage());
                    }
                }
                if (any) bad++;
            }
        }
        System.err.println("validated " + resources + " resource(s): " + bad + " with errors, " + errors + " error(s)");
        System.exit(bad == 0 ? 0 : 1);
    }
}
