// Benchmark harness for the peer converter (LinuxForHealth hl7v2-fhir-converter): converts each
// given HL7 v2 file to FHIR JSON repeatedly on one thread and prints messages per second.
// Run with Java's single-file source launcher (see run.sh); our own code, no build step.
import io.github.linuxforhealth.fhir.FHIRContext;
import io.github.linuxforhealth.hl7.ConverterOptions;
import io.github.linuxforhealth.hl7.HL7ToFHIRConverter;
import io.github.linuxforhealth.hl7.message.HL7MessageEngine;
import java.util.HashMap;
import java.util.function.Function;
import org.hl7.fhir.r4.model.Bundle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

public class PeerBench {
    public static void main(String[] args) throws Exception {
        double seconds = Double.parseDouble(args[0]);
        HL7ToFHIRConverter converter = new HL7ToFHIRConverter();
        // Mode 1: the documented API, convert(String), which builds its engine per call.
        // Mode 2: the peer at its best, one engine and FHIR context reused for every message.
        ConverterOptions options = new ConverterOptions.Builder().build();
        HL7MessageEngine engine = new HL7MessageEngine(new FHIRContext(false, false, new HashMap<>(), null), Bundle.BundleType.COLLECTION);
        Function<String, String> perCall = converter::convert;
        Function<String, String> reused = m -> engine.getFHIRContext().encodeResourceToString(converter.convertToBundle(m, options, engine));
        for (int i = 1; i < args.length; i++) {
            String msg = Files.readString(Path.of(args[i]), StandardCharsets.UTF_8);
            run(Path.of(args[i]).getFileName() + " convert(String)", msg, perCall, seconds);
            run(Path.of(args[i]).getFileName() + " engine reused", msg, reused, seconds);
        }
    }

    static void run(String name, String msg, Function<String, String> f, double seconds) {
        long outBytes = f.apply(msg).length();
        // Warm-up (JIT) for the same time as the measurement.
        long end = System.nanoTime() + (long) (seconds * 1e9);
        while (System.nanoTime() < end) {
            f.apply(msg);
        }
        long n = 0;
        long sink = 0;
        // CPU time of this thread too, as the Rust side reports, so that other work on a shared
        // machine does not distort the comparison (GC and JIT threads are not counted: the
        // peer's figure is, if anything, flattered).
        java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
        long cpu0 = mx.getCurrentThreadCpuTime();
        long start = System.nanoTime();
        end = start + (long) (seconds * 1e9);
        while (System.nanoTime() < end) {
            sink += f.apply(msg).length();
            n++;
        }
        double elapsed = (System.nanoTime() - start) / 1e9;
        double cpu = (mx.getCurrentThreadCpuTime() - cpu0) / 1e9;
        System.out.printf("%s: %.1f messages/s per core (CPU time), %.1f messages/s wall (%d messages in %.1f s, %d chars of JSON each, sink %d)%n",
            name, n / cpu, n / elapsed, n, elapsed, outBytes, sink % 7);
    }
}
